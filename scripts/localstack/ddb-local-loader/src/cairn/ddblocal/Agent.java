package cairn.ddblocal;

import java.lang.instrument.Instrumentation;

/**
 * Stands in for LocalStack's DynamoDB Local javaagent (ddb-local-loader), which LocalStack
 * starts DynamoDB Local with. The real agent only lifts DynamoDB Local's limit of 20 global
 * secondary indexes; Cairn's table has none, so this one does nothing. Built from source by
 * scripts/localstack/install.sh.
 */
public final class Agent {
  private Agent() {}

  public static void premain(String args, Instrumentation instrumentation) {
    // nothing to patch
  }
}
