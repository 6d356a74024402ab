// Azure Monitor alerts over the service's telemetry: an action group and one scheduled query rule
// (log search alert) per condition, each over the Log Analytics workspace the workspace-based
// Application Insights writes AppMetrics and AppTraces to. The queries are infra/alerts/*.kql, each
// preceded here by the `let`s it reads (`threshold`, `lookback`); their metric and event names are
// hotpatch/telemetry.py's, which tests/infra/test_alerts_and_workbook.py checks and runs them over.
// https://learn.microsoft.com/azure/azure-monitor/alerts/alerts-create-log-alert-rule
// https://learn.microsoft.com/azure/templates/microsoft.insights/scheduledqueryrules

@description('Azure region of the alert rules (the workspace\'s).')
param location string

@description('Tags on every resource.')
param tags object

@description('Seeds the resource names.')
param resourceToken string

@description('Resource id of the Log Analytics workspace the telemetry lands in.')
param workspaceId string

@description('Whether the alert rules evaluate.')
param enabled bool

@description('Email addresses the action group notifies.')
param emails array

@secure()
@description('Webhooks the action group calls (common alert schema): receiver name -> URL. Secure: a URL may carry a secret.')
param webhooks object

@description('Non-compliant machines: fires when the latest complete sweep counts more than this many.')
param nonCompliantThreshold int
@description('Non-compliant machines: severity (0 critical .. 4 verbose).')
param nonCompliantSeverity int
@description('Non-compliant machines: minutes between evaluations.')
param nonCompliantFrequencyMinutes int
@description('Non-compliant machines: hours of telemetry each evaluation reads (the latest sweep in them).')
param nonCompliantWindowHours int

@description('Off the hotpatch cycle: fires when the latest complete sweep counts more machines off the cycle than this.')
param offCycleThreshold int
@description('Off the hotpatch cycle: severity.')
param offCycleSeverity int
@description('Off the hotpatch cycle: minutes between evaluations.')
param offCycleFrequencyMinutes int
@description('Off the hotpatch cycle: hours of telemetry each evaluation reads.')
param offCycleWindowHours int

@description('Stale assessments: fires when the latest complete sweep counts more machines whose assessment is stale, missing or failed than this.')
param staleAssessmentsThreshold int
@description('Stale assessments: severity.')
param staleAssessmentsSeverity int
@description('Stale assessments: minutes between evaluations.')
param staleAssessmentsFrequencyMinutes int
@description('Stale assessments: hours of telemetry each evaluation reads.')
param staleAssessmentsWindowHours int

@description('Remediation failures: fires when failed operations, poisoned batches and failed remediation runs in the window exceed this.')
param remediationFailuresThreshold int
@description('Remediation failures: severity.')
param remediationFailuresSeverity int
@description('Remediation failures: minutes between evaluations.')
param remediationFailuresFrequencyMinutes int
@description('Remediation failures: hours of telemetry each evaluation reads.')
param remediationFailuresWindowHours int

@description('Stale release catalog: fires when the catalog in force has learnt of no release for more than this many days.')
param staleCatalogDays int
@description('Stale release catalog: severity.')
param staleCatalogSeverity int
@description('Stale release catalog: minutes between evaluations.')
param staleCatalogFrequencyMinutes int
@description('Stale release catalog: hours of telemetry each evaluation reads.')
param staleCatalogWindowHours int

@description('Sweep heartbeat: fires when no sweep completed within this many hours (also when the app sends nothing at all).')
param sweepHeartbeatHours int
@description('Sweep heartbeat: severity.')
param sweepHeartbeatSeverity int
@description('Sweep heartbeat: minutes between evaluations.')
param sweepHeartbeatFrequencyMinutes int

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: 'ag-${resourceToken}'
  location: 'Global'
  tags: tags
  properties: {
    groupShortName: 'hotpatch'
    enabled: true
    emailReceivers: [
      for (email, index) in emails: {
        name: 'email-${index}'
        emailAddress: email
        useCommonAlertSchema: true
      }
    ]
    webhookReceivers: [
      for webhook in items(webhooks): {
        name: webhook.key
        serviceUri: webhook.value
        useCommonAlertSchema: true
      }
    ]
  }
}

// One entry per rule: what it is called and says, its query, and its parameters. `threshold` and
// `lookback` are declared in front of the query text as KQL `let`s.
var rules = [
  {
    name: 'non-compliant'
    displayName: 'hotpatch: non-compliant machines'
    description: 'The latest complete sweep counts more non-compliant machines than the threshold (hotpatch.machines, state non_compliant).'
    query: 'let threshold = ${nonCompliantThreshold};\nlet lookback = ${nonCompliantWindowHours}h;\n${loadTextContent('../alerts/non-compliant.kql')}'
    severity: nonCompliantSeverity
    frequencyMinutes: nonCompliantFrequencyMinutes
    windowHours: nonCompliantWindowHours
  }
  {
    name: 'off-cycle'
    displayName: 'hotpatch: machines off the hotpatch cycle'
    description: 'The latest complete sweep finds machines off the hotpatch cycle (hotpatch.machines.off_cycle: behind the current baseline, or on a regular cumulative-update build).'
    query: 'let threshold = ${offCycleThreshold};\nlet lookback = ${offCycleWindowHours}h;\n${loadTextContent('../alerts/off-cycle.kql')}'
    severity: offCycleSeverity
    frequencyMinutes: offCycleFrequencyMinutes
    windowHours: offCycleWindowHours
  }
  {
    name: 'stale-assessments'
    displayName: 'hotpatch: stale patch assessments'
    description: 'The latest complete sweep counts more machines whose patch assessment is stale, missing or failed than the threshold (hotpatch.machines, state assessment_due).'
    query: 'let threshold = ${staleAssessmentsThreshold};\nlet lookback = ${staleAssessmentsWindowHours}h;\n${loadTextContent('../alerts/stale-assessments.kql')}'
    severity: staleAssessmentsSeverity
    frequencyMinutes: staleAssessmentsFrequencyMinutes
    windowHours: staleAssessmentsWindowHours
  }
  {
    name: 'remediation-failures'
    displayName: 'hotpatch: remediation failures'
    description: 'Patch operations failed, batches went to the poison queue, or remediation runs failed (hotpatch.operations, hotpatch.batch.poisoned, hotpatch.run.finished).'
    query: 'let threshold = ${remediationFailuresThreshold};\nlet lookback = ${remediationFailuresWindowHours}h;\n${loadTextContent('../alerts/remediation-failures.kql')}'
    severity: remediationFailuresSeverity
    frequencyMinutes: remediationFailuresFrequencyMinutes
    windowHours: remediationFailuresWindowHours
  }
  {
    name: 'stale-catalog'
    displayName: 'hotpatch: stale release catalog'
    description: 'The release catalog in force has learnt of no release for longer than the threshold in days (hotpatch.catalog.staleness).'
    query: 'let threshold = ${staleCatalogDays};\nlet lookback = ${staleCatalogWindowHours}h;\n${loadTextContent('../alerts/stale-catalog.kql')}'
    severity: staleCatalogSeverity
    frequencyMinutes: staleCatalogFrequencyMinutes
    windowHours: staleCatalogWindowHours
  }
  {
    name: 'sweep-heartbeat'
    displayName: 'hotpatch: no complete sweep'
    description: 'No sweep completed within the window (no hotpatch.run.finished of a sweep that succeeded): sweeps fail, or the app is down or silent.'
    query: 'let lookback = ${sweepHeartbeatHours}h;\n${loadTextContent('../alerts/sweep-heartbeat.kql')}'
    severity: sweepHeartbeatSeverity
    frequencyMinutes: sweepHeartbeatFrequencyMinutes
    windowHours: sweepHeartbeatHours
  }
]

resource alertRules 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [
  for rule in rules: {
    name: 'alert-${resourceToken}-${rule.name}'
    location: location
    tags: tags
    kind: 'LogAlert'
    properties: {
      displayName: rule.displayName
      description: rule.description
      enabled: enabled
      severity: rule.severity
      scopes: [
        workspaceId
      ]
      // ISO 8601 durations as Azure Monitor lists them: whole days as days (P1D, not PT24H), whole
      // hours as hours (PT1H, not PT60M). A window is one of its granularities (5, 10, 15, 30, 45
      // minutes, 1 to 6 hours, 1 or 2 days; main.bicep allows only those):
      // https://github.com/Azure/azure-rest-api-specs/issues/21258
      evaluationFrequency: rule.frequencyMinutes % 1440 == 0 ? 'P${rule.frequencyMinutes / 1440}D' : (rule.frequencyMinutes % 60 == 0 ? 'PT${rule.frequencyMinutes / 60}H' : 'PT${rule.frequencyMinutes}M')
      windowSize: rule.windowHours % 24 == 0 ? 'P${rule.windowHours / 24}D' : 'PT${rule.windowHours}H'
      criteria: {
        allOf: [
          {
            // Each query returns a row only when its condition holds: one row is an alert.
            query: rule.query
            timeAggregation: 'Count'
            operator: 'GreaterThan'
            threshold: 0
            failingPeriods: {
              numberOfEvaluationPeriods: 1
              minFailingPeriodsToAlert: 1
            }
          }
        ]
      }
      autoMitigate: true
      // The tables fill when the app first reports; a new workspace may not know them yet.
      skipQueryValidation: true
      actions: {
        actionGroups: [
          actionGroup.id
        ]
      }
    }
  }
]

output actionGroupId string = actionGroup.id
output alertRuleIds array = [for (rule, index) in rules: alertRules[index].id]
