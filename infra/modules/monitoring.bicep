// Log Analytics workspace and the workspace-based Application Insights the app sends telemetry to.
// https://learn.microsoft.com/azure/azure-monitor/app/create-workspace-resource

@description('Azure region.')
param location string

@description('Tags on every resource.')
param tags object

@description('Seeds the resource names.')
param resourceToken string

@description('Days Log Analytics keeps data.')
param retentionInDays int

@description('Principal id of the identity that sends the telemetry (Monitoring Metrics Publisher on Application Insights).')
param principalId string

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${resourceToken}'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${resourceToken}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    // Only Microsoft Entra-authenticated telemetry is taken: the app sends as its identity
    // (APPLICATIONINSIGHTS_AUTHENTICATION_STRING, which the Azure Monitor exporter reads), so the
    // connection string's key grants nothing.
    // https://learn.microsoft.com/azure/azure-monitor/app/azure-ad-authentication
    DisableLocalAuth: true
  }
}

// Monitoring Metrics Publisher publishes all telemetry, not only metrics (same page).
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

resource publisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, principalId, monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output workspaceId string = workspace.id
output appInsightsId string = appInsights.id
output appInsightsName string = appInsights.name
output connectionString string = appInsights.properties.ConnectionString
