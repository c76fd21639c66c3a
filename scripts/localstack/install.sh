#!/usr/bin/env bash
# Installs a LocalStack that runs without Docker (see ../../../shared/TESTING.md, section 3b)
# into .cache/localstack/ inside the repo, for `npm run test:localstack`. Idempotent: each
# piece whose pinned stamp is already there is skipped. Every version is pinned here, and every
# piece comes from a package registry (PyPI, npm, Maven Central) or is built from this repo:
#
#   localstack-core[runtime]  <- PyPI (with the dependencies of its release day)
#   cairn-localstack-executor <- scripts/localstack/cairn_executor (our Lambda runtime executor)
#   DynamoDB Local jars       <- Maven Central (LocalStack's DynamoDB runs them)
#   ddb-local-loader agent    <- built here from scripts/localstack/ddb-local-loader (does nothing)
#   kinesis-local             <- npm (LocalStack's DynamoDB Streams backend)
#
# Prints the FILESYSTEM_ROOT and the venv's python on its last lines for the caller.
set -euo pipefail

LOCALSTACK_VERSION="4.9.2"
# localstack-core 4.9.2's dependencies as of its release: newer ones break it.
PYPI_CUTOFF="2025-10-07T00:00:00Z"
PIP_VERSION="26.3"
PYTHON_VERSION="3.11"
DYNAMODB_LOCAL_VERSION="3.3.1"
SQLITE4JAVA_VERSION="1.0.392"
KINESIS_LOCAL_VERSION="0.4.13"
DEPENDENCY_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/scripts/localstack"
CACHE="${CAIRN_LOCALSTACK_CACHE:-$ROOT/.cache/localstack}"
VENV="$CACHE/venv"
FSROOT="$CACHE/filesystem"
LIBS="$FSROOT/usr/lib/localstack"
# Maven's local repository: shared with the local cloud's install (scripts/cloud/install.sh).
M2="${CAIRN_CLOUD_CACHE:-$ROOT/.cache/cloud}/m2"

say() { printf '[localstack:install] %s\n' "$*" >&2; }
die() {
  printf '[localstack:install] ERROR: %s\n' "$*" >&2
  exit 1
}

# --- prerequisites -----------------------------------------------------------------
find_python() {
  local candidate
  for candidate in "${CAIRN_LOCALSTACK_PYTHON:-}" "python${PYTHON_VERSION}" "$HOME/.pyenv/versions/${PYTHON_VERSION}"*/bin/python; do
    [[ -n "$candidate" ]] || continue
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c "import sys, venv, ensurepip; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)" 2>/dev/null; then
      command -v "$candidate"
      return
    fi
  done
  if PYENV_VERSION="$PYTHON_VERSION" python3 -c "import sys, venv, ensurepip; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)" 2>/dev/null; then
    PYENV_VERSION="$PYTHON_VERSION" python3 -c 'import sys; print(sys.executable)'
    return
  fi
  return 1
}
missing=()
command -v java >/dev/null 2>&1 || missing+=("java: a JDK 17+ (Debian/Ubuntu: apt-get install openjdk-17-jdk-headless)")
command -v javac >/dev/null 2>&1 || missing+=("javac: a JDK 17+ (Debian/Ubuntu: apt-get install openjdk-17-jdk-headless)")
command -v jar >/dev/null 2>&1 || missing+=("jar: a JDK 17+ (Debian/Ubuntu: apt-get install openjdk-17-jdk-headless)")
command -v mvn >/dev/null 2>&1 || missing+=("mvn: Apache Maven 3.8+ (Debian/Ubuntu: apt-get install maven)")
command -v npm >/dev/null 2>&1 || missing+=("npm: Node.js 20+")
PYTHON="$(find_python || true)"
[[ -n "$PYTHON" ]] || missing+=("python${PYTHON_VERSION}: localstack-core ${LOCALSTACK_VERSION} needs Python ${PYTHON_VERSION} with venv (pyenv install ${PYTHON_VERSION}, or set CAIRN_LOCALSTACK_PYTHON)")
if ((${#missing[@]})); then
  printf '[localstack:install] ERROR: LocalStack needs tools that are not installed:\n' >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 1
fi
JAVA_HOME_DIR="$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")"
java_major="$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)"
[[ -n "$java_major" && "$java_major" -ge 17 ]] || die "DynamoDB Local ${DYNAMODB_LOCAL_VERSION} needs Java 17+, found '${java_major:-unknown}'"

mkdir -p "$CACHE" "$LIBS"

# --- localstack-core in a venv ------------------------------------------------------
stamp="localstack-core ${LOCALSTACK_VERSION} <${PYPI_CUTOFF} pip ${PIP_VERSION}"
if [[ -x "$VENV/bin/localstack" && -f "$VENV/installed" && "$(cat "$VENV/installed")" == "$stamp" ]]; then
  say "localstack-core ${LOCALSTACK_VERSION} already installed"
else
  say "installing localstack-core[runtime]==${LOCALSTACK_VERSION} from PyPI (dependencies before ${PYPI_CUTOFF}) with $PYTHON"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  # The machine's pip may predate --uploaded-prior-to (pip 26+).
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "pip==${PIP_VERSION}"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --uploaded-prior-to "$PYPI_CUTOFF" "localstack-core[runtime]==${LOCALSTACK_VERSION}" \
    || die "pip could not install localstack-core ${LOCALSTACK_VERSION}"
  echo "$stamp" >"$VENV/installed"
fi

# --- our Lambda runtime executor (plugin) --------------------------------------------
PLUGIN="$HERE/cairn_executor"
plugin_hash="$(cd "$PLUGIN" && find . -type f \( -name '*.py' -o -name '*.mjs' -o -name '*.toml' \) -not -path '*/build/*' -not -path '*.egg-info*' | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)"
if [[ -f "$VENV/executor-installed" && "$(cat "$VENV/executor-installed")" == "$plugin_hash" ]]; then
  say "cairn executor plugin ($plugin_hash) already installed"
else
  say "installing the cairn executor plugin ($plugin_hash) into the venv"
  build="$CACHE/executor-build"
  rm -rf "$build"
  cp -r "$PLUGIN" "$build"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --force-reinstall "$build" \
    || die "pip could not install the executor plugin from $PLUGIN"
  rm -rf "$build"
  echo "$plugin_hash" >"$VENV/executor-installed"
fi

# --- Java 21 for LocalStack: the system JDK serves ------------------------------------
mkdir -p "$LIBS/java"
if [[ "$(readlink "$LIBS/java/21" 2>/dev/null || true)" != "$JAVA_HOME_DIR" ]]; then
  rm -rf "$LIBS/java/21"
  ln -s "$JAVA_HOME_DIR" "$LIBS/java/21"
  say "java/21 -> $JAVA_HOME_DIR (Java $java_major)"
fi

# --- DynamoDB Local, laid out as LocalStack's installer would -----------------------
DDB="$LIBS/dynamodb-local/2"
ddb_stamp="DynamoDBLocal ${DYNAMODB_LOCAL_VERSION} sqlite4java ${SQLITE4JAVA_VERSION} agent $(sha256sum "$HERE/ddb-local-loader/src/cairn/ddblocal/Agent.java" | cut -c1-16)"
if [[ -f "$DDB/DynamoDBLocal.jar" && -f "$DDB/installed" && "$(cat "$DDB/installed")" == "$ddb_stamp" ]]; then
  say "DynamoDB Local ${DYNAMODB_LOCAL_VERSION} already laid out"
else
  say "laying out DynamoDB Local ${DYNAMODB_LOCAL_VERSION} from Maven Central"
  rm -rf "$DDB"
  mkdir -p "$DDB/DynamoDBLocal_lib" "$DDB/build"
  cat >"$DDB/build/pom.xml" <<POM
<?xml version="1.0" encoding="UTF-8"?>
<!-- generated by scripts/localstack/install.sh -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>cairn.localstack</groupId>
  <artifactId>dynamodb-local</artifactId>
  <version>0</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>software.amazon.dynamodb</groupId>
      <artifactId>DynamoDBLocal</artifactId>
      <version>${DYNAMODB_LOCAL_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>com.almworks.sqlite4java</groupId>
      <artifactId>libsqlite4java-linux-amd64</artifactId>
      <version>${SQLITE4JAVA_VERSION}</version>
      <type>so</type>
    </dependency>
  </dependencies>
</project>
POM
  if ! mvn -B -q -Dstyle.color=never -f "$DDB/build/pom.xml" -Dmaven.repo.local="$M2" \
    "$DEPENDENCY_PLUGIN:copy-dependencies" -DoutputDirectory="$DDB/DynamoDBLocal_lib" -DincludeScope=runtime >"$DDB/build/mvn.log" 2>&1; then
    cat "$DDB/build/mvn.log" >&2
    die "Maven could not fetch DynamoDB Local ${DYNAMODB_LOCAL_VERSION}"
  fi
  # sqlite4java looks for its native library under its unversioned name.
  cp "$DDB/DynamoDBLocal_lib/libsqlite4java-linux-amd64-${SQLITE4JAVA_VERSION}.so" "$DDB/DynamoDBLocal_lib/libsqlite4java-linux-amd64.so"
  # DynamoDBLocal.jar: LocalStack runs `java -jar DynamoDBLocal.jar`; a manifest-only jar
  # naming the main class and every library jar.
  classpath="$(cd "$DDB" && find DynamoDBLocal_lib -name '*.jar' | LC_ALL=C sort | tr '\n' ' ')"
  {
    echo "Manifest-Version: 1.0"
    echo "Main-Class: software.amazon.dynamodb.services.local.main.ServerRunner"
    # Manifest lines are at most 72 bytes; continuation lines start with one space.
    printf 'Class-Path: . %s\n' "$classpath" | fold -w 70 | sed '2,$s/^/ /'
  } >"$DDB/build/MANIFEST.MF"
  mkdir -p "$DDB/build/empty"
  jar --create --file "$DDB/DynamoDBLocal.jar" --manifest "$DDB/build/MANIFEST.MF" -C "$DDB/build/empty" .
  # The javaagent LocalStack passes (-javaagent:.../ddb-local-loader-0.1.jar), built from source.
  mkdir -p "$DDB/build/agent"
  javac --release 17 -d "$DDB/build/agent" "$HERE/ddb-local-loader/src/cairn/ddblocal/Agent.java"
  printf 'Manifest-Version: 1.0\nPremain-Class: cairn.ddblocal.Agent\n' >"$DDB/build/agent.MF"
  jar --create --file "$DDB/ddb-local-loader-0.1.jar" --manifest "$DDB/build/agent.MF" -C "$DDB/build/agent" .
  rm -rf "$DDB/build"
  echo "$ddb_stamp" >"$DDB/installed"
fi

# --- kinesis-local (npm): the backend of LocalStack's DynamoDB Streams ---------------
KINESIS="$LIBS/kinesis-local/${KINESIS_LOCAL_VERSION}"
if [[ -f "$KINESIS/node_modules/kinesis-local/main.js" ]]; then
  say "kinesis-local ${KINESIS_LOCAL_VERSION} already installed"
else
  say "installing kinesis-local@${KINESIS_LOCAL_VERSION} from npm"
  rm -rf "$KINESIS"
  mkdir -p "$KINESIS"
  npm install --silent --no-audit --no-fund --prefix "$KINESIS" "kinesis-local@${KINESIS_LOCAL_VERSION}" >&2 || die "npm could not install kinesis-local@${KINESIS_LOCAL_VERSION}"
fi

say "done: $CACHE"
echo "FILESYSTEM_ROOT=$FSROOT"
echo "LOCALSTACK_PYTHON=$VENV/bin/python"
