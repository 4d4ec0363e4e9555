// ciwatchReport: a shared-library step that reports the build to ciwatch with sh and curl only.
//
// Load integrations/jenkins of the ciwatch repository as a shared library (Manage Jenkins >
// System > Global Trusted Pipeline Libraries, "Library Path": integrations/jenkins), then:
//
//   @Library('ciwatch') _
//   pipeline {
//     ...
//     post { always { ciwatchReport(server: 'https://ciwatch.example.com') } }
//   }
//
// Arguments (all optional): server (default env.CIWATCH_SERVER), credentialsId of a "Secret
// text" credential holding the server's report_token (default 'ciwatch-report-token'), status
// (default currentBuild.currentResult), source (default 'push').
def call(Map args = [:]) {
  String status = args.status ?: currentBuild.currentResult
  String server = args.server ?: env.CIWATCH_SERVER
  String script = '.ciwatch-report.sh'  // in the workspace
  writeFile file: script, text: libraryResource('ciwatch/report.sh')
  // Values reach the shell as environment variables: Groovy interpolates nothing into the
  // sh text, so quotes, $ and spaces in them stay as they are.
  withEnv([
    "CIWATCH_STATUS=${status}",
    "CIWATCH_SERVER=${server}",
    "CIWATCH_SOURCE=${args.source ?: 'push'}",
    "CIWATCH_SCRIPT=${script}",
  ]) {
    withCredentials([string(credentialsId: args.credentialsId ?: 'ciwatch-report-token',
                            variable: 'CIWATCH_REPORT_TOKEN')]) {
      sh 'sh "$CIWATCH_SCRIPT" "$CIWATCH_STATUS"'
    }
  }
}
