"""Cairn's LocalStack Lambda runtime executor: functions run as local Node.js processes."""
