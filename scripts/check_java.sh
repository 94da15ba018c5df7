#!/usr/bin/env bash
# Spark needs Java 17 or newer. Say clearly what to do when it is missing.
set -euo pipefail
java_bin="${JAVA_HOME:+$JAVA_HOME/bin/}java"
if ! command -v "$java_bin" >/dev/null 2>&1; then
  echo "ERROR: Java 17+ is required (Spark runs on the JVM) and no 'java' was found." >&2
  echo "  Debian/Ubuntu: sudo apt-get install -y openjdk-17-jre-headless" >&2
  echo "  macOS:         brew install openjdk@17" >&2
  echo "  then set JAVA_HOME (e.g. export JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64) and re-run make install." >&2
  exit 1
fi
version=$("$java_bin" -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')
major=${version%%.*}
if [ "$major" = "1" ]; then major=$(echo "$version" | cut -d. -f2); fi
if ! [ "$major" -ge 17 ] 2>/dev/null; then
  echo "ERROR: Java $version found ($java_bin); Spark 4 needs Java 17 or newer." >&2
  echo "  Debian/Ubuntu: sudo apt-get install -y openjdk-17-jre-headless, then set JAVA_HOME to it." >&2
  exit 1
fi
echo "Java $version OK ($java_bin)"
