// hotpatch: the Function App, its storage, monitoring, identity and roles (issue #11).
// A subscription deployment (`azd up`, or `az deployment sub create`; README "Deployment"): it
// creates the resource group and everything in it, and assigns the identity's roles over the
// target subscriptions. Role assignments over a management group cannot be made from here (a
// subscription deployment reaches subscriptions and resource groups only): management-group.bicep
// assigns those, with this deployment's `identityPrincipalId` output.
// https://learn.microsoft.com/azure/azure-resource-manager/bicep/deploy-to-subscription
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the environment (azd sets it); names the resource group and seeds resource names.')
param environmentName string

@minLength(1)
@description('Azure region of every resource.')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@allowed([
  'report'
  'remediate'
])
@description('report: nothing is ever started and the patch operator role is not assigned at all; remediate: the policy file decides what is started, and the role is assigned.')
param mode string = 'report'

@description('The remediation policy file, a path relative to the repository root (it ships in the app package); read in remediate mode only. See README "Remediation policy".')
param remediationPolicyFile string = ''

@description('Subscription ids to watch, comma-separated; empty: this deployment\'s subscription. Reader (and the patch operator role in remediate mode) is assigned in each.')
param targetSubscriptions string = ''

@description('Management group ids to watch instead, comma-separated; their roles are assigned by management-group.bicep.')
param targetManagementGroups string = ''

@description('Client id of a Microsoft Entra app with app roles Hotpatch.Read and Hotpatch.Operate: turns on App Service Authentication and HOTPATCH_REQUIRE_ROLES; empty: function keys only.')
param entraClientId string = ''

@allowed([
  512
  2048
  4096
])
@description('Memory of each Function App instance, MB.')
param instanceMemoryMB int = 2048

@minValue(1)
@maxValue(1000)
@description('Most instances the Function App scales out to.')
param maximumInstanceCount int = 40

@minValue(30)
@maxValue(730)
@description('Days the Log Analytics workspace keeps the telemetry.')
param logRetentionDays int = 30

// The service's settings (hotpatch/settings.py); each default is the code's own, and
// tests/infra/test_settings_and_storage.py holds them equal.
@description('HOTPATCH_IMAGE_CATALOG: a replacement image catalog, a path in the app package; empty: the shipped one.')
param imageCatalog string = ''

@description('HOTPATCH_RELEASE_CATALOG: a replacement release catalog, a path in the app package; empty: the shipped one.')
param releaseCatalog string = ''

@description('HOTPATCH_ALLOW_PREVIEW_IMAGES: count preview hotpatch offers as eligible.')
param allowPreviewImages bool = false

@description('HOTPATCH_ASSESSMENT_MAX_AGE_HOURS: an older assessment is stale.')
param assessmentMaxAgeHours int = 72

@description('HOTPATCH_HOTPATCH_GRACE_DAYS: days after a hotpatch release before non-compliant.')
param hotpatchGraceDays int = 7

@description('HOTPATCH_BASELINE_GRACE_DAYS: days after a baseline release before non-compliant.')
param baselineGraceDays int = 14

@description('HOTPATCH_RING_TAG: the tag naming a machine\'s ring.')
param ringTag string = 'hotpatch-ring'

@description('HOTPATCH_MONTH_OVERRIDES: operator month kinds, e.g. ws2022:2026-08=unplanned_baseline.')
param monthOverrides string = ''

@description('HOTPATCH_SWEEP_SCHEDULE: when the sweep timer runs (NCRONTAB, UTC).')
param sweepSchedule string = '0 0 * * * *'

@description('HOTPATCH_CATALOG_SCHEDULE: when the catalog timer refreshes the release catalog (NCRONTAB, UTC).')
param catalogSchedule string = '0 30 5 * * *'

@description('HOTPATCH_REMEDIATE_SCHEDULE: when the remediate timer plans and queues operations (NCRONTAB, UTC).')
param remediateSchedule string = '0 */30 * * * *'

@description('HOTPATCH_CATALOG_SOURCE: where the catalog timer reads the release information page.')
param catalogSource string = 'https://learn.microsoft.com/windows/release-health/windows-server-release-info'

var tags = {
  'azd-env-name': environmentName
  app: 'hotpatch'
}
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var remediate = mode == 'remediate'

var managementGroups = filter(map(split(targetManagementGroups, ','), id => trim(id)), id => !empty(id))
var listedSubscriptions = filter(map(split(targetSubscriptions, ','), id => trim(id)), id => !empty(id))
// The subscriptions whose roles this deployment assigns: none when management groups are
// watched (management-group.bicep assigns theirs), else the list, else this subscription.
var subscriptionScopes = !empty(managementGroups)
  ? []
  : (empty(listedSubscriptions) ? [subscription().subscriptionId] : listedSubscriptions)

// What the code uses in its storage account, by the names the code gives them:
// the store's container and tables (hotpatch/store/azure.py PREFIX, TABLES) and the queues the
// functions bind (hotpatch/functions: timers.BATCH_QUEUE, batches.POISON_QUEUE,
// assessments.ASSESSMENT_QUEUE). The Functions host makes its own containers at run time.
var storeContainer = 'hotpatch'
var storeTables = [
  'hotpatchsnapshots'
  'hotpatchtransitions'
  'hotpatchruns'
  'hotpatchjournal'
  'hotpatchrollout'
  'hotpatchleases'
]
var queues = [
  'hotpatch-assessments'
  'hotpatch-batches'
  'hotpatch-batches-poison'
]
var deploymentContainer = 'app-package-${resourceToken}'
// azure.yaml's service name.
var serviceName = 'api'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    retentionInDays: logRetentionDays
    principalId: identity.outputs.principalId
  }
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    containers: [
      deploymentContainer
      storeContainer
    ]
    tables: storeTables
    queues: queues
    principalId: identity.outputs.principalId
  }
}

module functionApp 'modules/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    serviceName: serviceName
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainer
    appInsightsConnectionString: monitoring.outputs.connectionString
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    entraClientId: entraClientId
    openPaths: [
      '/api/health'
      '/api/openapi.json'
    ]
    // Every setting of hotpatch/settings.py, and only those (tests/infra checks the set).
    appSettings: {
      HOTPATCH_IMAGE_CATALOG: imageCatalog
      HOTPATCH_RELEASE_CATALOG: releaseCatalog
      HOTPATCH_ALLOW_PREVIEW_IMAGES: allowPreviewImages ? 'true' : 'false'
      HOTPATCH_ASSESSMENT_MAX_AGE_HOURS: string(assessmentMaxAgeHours)
      HOTPATCH_HOTPATCH_GRACE_DAYS: string(hotpatchGraceDays)
      HOTPATCH_BASELINE_GRACE_DAYS: string(baselineGraceDays)
      HOTPATCH_RING_TAG: ringTag
      HOTPATCH_MONTH_OVERRIDES: monthOverrides
      HOTPATCH_SUBSCRIPTIONS: join(subscriptionScopes, ',')
      HOTPATCH_MANAGEMENT_GROUPS: join(managementGroups, ',')
      HOTPATCH_MANAGED_IDENTITY_CLIENT_ID: identity.outputs.clientId
      // Relative to the app's root, which the Python worker makes its working directory:
      // https://github.com/Azure/azure-functions-python-worker/issues/700
      HOTPATCH_REMEDIATION_POLICY: remediate ? remediationPolicyFile : ''
      HOTPATCH_REQUIRE_ROLES: empty(entraClientId) ? 'false' : 'true'
      // The store's Blob endpoint: snapshots in Blob, records in Table of the same account.
      HOTPATCH_STORE: storage.outputs.blobEndpoint
      HOTPATCH_SWEEP_SCHEDULE: sweepSchedule
      HOTPATCH_CATALOG_SCHEDULE: catalogSchedule
      HOTPATCH_REMEDIATE_SCHEDULE: remediateSchedule
      HOTPATCH_CATALOG_SOURCE: catalogSource
    }
  }
}

// The custom role lives in the first target subscription and may be assigned in all of them.
module operatorRole 'modules/operator-role.bicep' = if (remediate && !empty(subscriptionScopes)) {
  name: 'hotpatch-operator-role-${resourceToken}'
  scope: subscription(empty(subscriptionScopes) ? subscription().subscriptionId : subscriptionScopes[0])
  params: {
    environmentName: environmentName
    assignableScopes: [for id in subscriptionScopes: '/subscriptions/${id}']
  }
}

module scopeRoles 'modules/scope-roles.bicep' = [
  for id in subscriptionScopes: {
    name: 'hotpatch-roles-${resourceToken}-${take(uniqueString(id), 6)}'
    scope: subscription(id)
    params: {
      principalId: identity.outputs.principalId
      operatorRoleName: remediate ? operatorRole!.outputs.name : ''
      assignOperator: remediate
    }
  }
]

// >>> alerts and workbook (owned by infra/modules/alerts.bicep, workbook.bicep)

@description('Whether the alert rules evaluate.')
param alertsEnabled bool = true

@description('Email addresses the alerts\' action group notifies.')
param alertEmails array = []

@secure()
@description('Webhooks the alerts\' action group calls with the common alert schema, by receiver name: {"<name>": "<URL>"}. Secure, as a URL may carry a secret: it stays out of the deployment\'s recorded parameters.')
param alertWebhooks object = {}

@minValue(0)
@description('Non-compliant machines alert: fires when the latest complete sweep counts more non-compliant machines than this.')
param alertNonCompliantThreshold int = 0

@allowed([0, 1, 2, 3, 4])
@description('Non-compliant machines alert: severity (0 critical .. 4 verbose).')
param alertNonCompliantSeverity int = 2

@allowed([5, 10, 15, 30, 45, 60, 120, 180, 240, 300, 360, 1440])
@description('Non-compliant machines alert: minutes between evaluations.')
param alertNonCompliantFrequencyMinutes int = 60

@allowed([1, 2, 3, 4, 5, 6, 24, 48])
@description('Non-compliant machines alert: hours of telemetry each evaluation reads (the latest sweep within them counts).')
param alertNonCompliantWindowHours int = 2

@minValue(0)
@description('Off-cycle alert: fires when the latest complete sweep counts more machines off the hotpatch cycle than this (0: any).')
param alertOffCycleThreshold int = 0

@allowed([0, 1, 2, 3, 4])
@description('Off-cycle alert: severity.')
param alertOffCycleSeverity int = 2

@allowed([5, 10, 15, 30, 45, 60, 120, 180, 240, 300, 360, 1440])
@description('Off-cycle alert: minutes between evaluations.')
param alertOffCycleFrequencyMinutes int = 60

@allowed([1, 2, 3, 4, 5, 6, 24, 48])
@description('Off-cycle alert: hours of telemetry each evaluation reads.')
param alertOffCycleWindowHours int = 2

@minValue(0)
@description('Stale assessments alert: fires when the latest complete sweep counts more machines whose patch assessment is stale, missing or failed than this.')
param alertStaleAssessmentsThreshold int = 0

@allowed([0, 1, 2, 3, 4])
@description('Stale assessments alert: severity.')
param alertStaleAssessmentsSeverity int = 3

@allowed([5, 10, 15, 30, 45, 60, 120, 180, 240, 300, 360, 1440])
@description('Stale assessments alert: minutes between evaluations.')
param alertStaleAssessmentsFrequencyMinutes int = 60

@allowed([1, 2, 3, 4, 5, 6, 24, 48])
@description('Stale assessments alert: hours of telemetry each evaluation reads.')
param alertStaleAssessmentsWindowHours int = 2

@minValue(0)
@description('Remediation failures alert: fires when failed patch operations, poisoned batches and failed remediation runs within the window add up to more than this.')
param alertRemediationFailuresThreshold int = 0

@allowed([0, 1, 2, 3, 4])
@description('Remediation failures alert: severity.')
param alertRemediationFailuresSeverity int = 1

@allowed([5, 10, 15, 30, 45, 60, 120, 180, 240, 300, 360, 1440])
@description('Remediation failures alert: minutes between evaluations.')
param alertRemediationFailuresFrequencyMinutes int = 60

@allowed([1, 2, 3, 4, 5, 6, 24, 48])
@description('Remediation failures alert: hours of telemetry each evaluation reads.')
param alertRemediationFailuresWindowHours int = 1

@minValue(0)
@description('Stale release catalog alert: fires when the release catalog in force has learnt of no release for more than this many days.')
param alertStaleCatalogDays int = 3

@allowed([0, 1, 2, 3, 4])
@description('Stale release catalog alert: severity.')
param alertStaleCatalogSeverity int = 2

@allowed([5, 10, 15, 30, 45, 60, 120, 180, 240, 300, 360, 1440])
@description('Stale release catalog alert: minutes between evaluations.')
param alertStaleCatalogFrequencyMinutes int = 360

@allowed([1, 2, 3, 4, 5, 6, 24, 48])
@description('Stale release catalog alert: hours of telemetry each evaluation reads (the newest staleness within them counts).')
param alertStaleCatalogWindowHours int = 6

@allowed([1, 2, 3, 4, 5, 6, 24, 48])
@description('Sweep heartbeat alert: fires when no sweep completed within this many hours, also when the app sends nothing at all.')
param alertSweepHeartbeatHours int = 3

@allowed([0, 1, 2, 3, 4])
@description('Sweep heartbeat alert: severity.')
param alertSweepHeartbeatSeverity int = 1

@allowed([5, 10, 15, 30, 45, 60, 120, 180, 240, 300, 360, 1440])
@description('Sweep heartbeat alert: minutes between evaluations.')
param alertSweepHeartbeatFrequencyMinutes int = 30

@description('Name of the workbook in the portal.')
param workbookDisplayName string = 'hotpatch'

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    workspaceId: monitoring.outputs.workspaceId
    enabled: alertsEnabled
    emails: alertEmails
    webhooks: alertWebhooks
    nonCompliantThreshold: alertNonCompliantThreshold
    nonCompliantSeverity: alertNonCompliantSeverity
    nonCompliantFrequencyMinutes: alertNonCompliantFrequencyMinutes
    nonCompliantWindowHours: alertNonCompliantWindowHours
    offCycleThreshold: alertOffCycleThreshold
    offCycleSeverity: alertOffCycleSeverity
    offCycleFrequencyMinutes: alertOffCycleFrequencyMinutes
    offCycleWindowHours: alertOffCycleWindowHours
    staleAssessmentsThreshold: alertStaleAssessmentsThreshold
    staleAssessmentsSeverity: alertStaleAssessmentsSeverity
    staleAssessmentsFrequencyMinutes: alertStaleAssessmentsFrequencyMinutes
    staleAssessmentsWindowHours: alertStaleAssessmentsWindowHours
    remediationFailuresThreshold: alertRemediationFailuresThreshold
    remediationFailuresSeverity: alertRemediationFailuresSeverity
    remediationFailuresFrequencyMinutes: alertRemediationFailuresFrequencyMinutes
    remediationFailuresWindowHours: alertRemediationFailuresWindowHours
    staleCatalogDays: alertStaleCatalogDays
    staleCatalogSeverity: alertStaleCatalogSeverity
    staleCatalogFrequencyMinutes: alertStaleCatalogFrequencyMinutes
    staleCatalogWindowHours: alertStaleCatalogWindowHours
    sweepHeartbeatHours: alertSweepHeartbeatHours
    sweepHeartbeatSeverity: alertSweepHeartbeatSeverity
    sweepHeartbeatFrequencyMinutes: alertSweepHeartbeatFrequencyMinutes
  }
}

module workbook 'modules/workbook.bicep' = {
  name: 'workbook'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    workspaceId: monitoring.outputs.workspaceId
    appInsightsId: monitoring.outputs.appInsightsId
    displayName: workbookDisplayName
  }
}

// <<< alerts and workbook

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output SERVICE_API_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_APP_URL string = 'https://${functionApp.outputs.defaultHostName}'
// For the Azure CLI (README): ARM may change the case of upper-case output names, not of these.
output functionAppName string = functionApp.outputs.name
@description('For management-group.bicep: the principal that gets the roles over the management groups.')
output identityPrincipalId string = identity.outputs.principalId
output identityClientId string = identity.outputs.clientId
output storageAccountName string = storage.outputs.name
output workspaceId string = monitoring.outputs.workspaceId
output appInsightsId string = monitoring.outputs.appInsightsId
