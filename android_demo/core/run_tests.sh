#!/usr/bin/env bash
# Compile and unit-test the pure-Java core with the JDK and Debian's JUnit 4 (no Gradle, no
# Android SDK): apt-get install openjdk-17-jdk-headless junit4
set -euo pipefail
cd "$(dirname "$0")"
CP=/usr/share/java/junit4.jar:/usr/share/java/hamcrest-core.jar
for j in /usr/share/java/junit4.jar /usr/share/java/hamcrest-core.jar; do
  [ -f "$j" ] || { echo "missing $j: apt-get install junit4" >&2; exit 1; }
done
rm -rf build && mkdir -p build/main build/test
javac -Xlint:all -Werror --release 11 -d build/main $(find src/main/java -name '*.java')
javac --release 11 -d build/test -cp build/main:$CP $(find src/test/java -name '*.java')
java -cp build/main:build/test:$CP org.junit.runner.JUnitCore org.granularmobile.core.CoreTest
