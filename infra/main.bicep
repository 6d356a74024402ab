// hotpatch: the Function App, its storage, monitoring, identity and roles (issue #11).
// Deployed at subscription scope: `az deployment sub create` / `azd up` (see README, Deployment).
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the environment (azd sets it); it names the resource group and seeds resource names.')
param environmentName string

@minLength(1)
@description('Azure region of every resource.')
param location string

@minValue(30)
@maxValue(730)
@description('Days the Log Analytics workspace keeps the telemetry.')
param logRetentionDays int = 30

var tags = {
  'azd-env-name': environmentName
  app: 'hotpatch'
}
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))

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
  }
}

// >>> alerts and workbook (owned by infra/modules/alerts.bicep, workbook.bicep)
// <<< alerts and workbook
