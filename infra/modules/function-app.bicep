// The Function App on the Flex Consumption plan, running this repository (function_app.py) on
// Python 3.11, as the user-assigned identity; App Service Authentication when an Entra app is
// given. Layout and identity-based settings follow the Azure-Samples azd templates
// (functions-quickstart-python-http-azd, azure-functions-flex-consumption-samples):
// https://github.com/Azure-Samples/functions-quickstart-python-http-azd
// The resource shape (functionAppConfig: deployment storage, scaleAndConcurrency, runtime):
// https://learn.microsoft.com/azure/azure-functions/flex-consumption-how-to
// https://learn.microsoft.com/azure/templates/microsoft.web/sites
// Instance memory sizes: https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#instance-memory

@description('Azure region.')
param location string

@description('Tags on every resource.')
param tags object

@description('Seeds the resource names.')
param resourceToken string

@description('The service name azd deploys this repository to (azure.yaml).')
param serviceName string

@description('Resource id of the user-assigned identity.')
param identityId string

@description('Client id of the user-assigned identity.')
param identityClientId string

@description('The storage account (host storage, deployment package, store, queues).')
param storageAccountName string

@description('The container the deployment package is uploaded to.')
param deploymentContainerName string

@description('Application Insights connection string.')
param appInsightsConnectionString string

@description('Memory of each instance, MB.')
param instanceMemoryMB int

@description('Most instances the app scales out to.')
param maximumInstanceCount int

@description('The service\'s own settings (HOTPATCH_*), as main.bicep computes them.')
param appSettings object

@description('Client id of the Microsoft Entra app for App Service Authentication; empty: none.')
param entraClientId string

@description('Paths anyone may read without signing in (the API\'s own open paths).')
param openPaths array

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-${resourceToken}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

// The host's own settings beside the service's. No FUNCTIONS_WORKER_RUNTIME or
// FUNCTIONS_EXTENSION_VERSION: Flex Consumption takes the runtime from functionAppConfig.runtime
// and refuses those settings:
// https://learn.microsoft.com/azure/azure-functions/functions-app-settings#flex-consumption-plan-deprecations
// AzureWebJobsStorage is identity-based (no connection string: shared keys are off); the
// service's own queue client (hotpatch/azure/queues.py) reads __queueServiceUri and __clientId:
// https://learn.microsoft.com/azure/azure-functions/functions-reference#connecting-to-host-storage-with-an-identity
var hostSettings = {
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
  AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
  AzureWebJobsStorage__tableServiceUri: storage.properties.primaryEndpoints.table
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
  // Telemetry goes as the identity (Application Insights takes no key-authenticated telemetry):
  // the host and the service's Azure Monitor exporter both read this setting.
  // https://learn.microsoft.com/azure/azure-functions/functions-app-settings#applicationinsights_authentication_string
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: 'func-${resourceToken}'
  location: location
  tags: union(tags, { 'azd-service-name': serviceName })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }

  resource settings 'config' = {
    name: 'appsettings'
    properties: union(appSettings, hostSettings)
  }

  // App Service Authentication (Easy Auth) with Microsoft Entra ID: callers sign in, the
  // platform passes their app roles (Hotpatch.Read, Hotpatch.Operate) in X-MS-CLIENT-PRINCIPAL,
  // and the API checks them (HOTPATCH_REQUIRE_ROLES). Function keys are still required.
  // https://learn.microsoft.com/azure/templates/microsoft.web/sites/config-authsettingsv2
  // https://learn.microsoft.com/azure/app-service/configure-authentication-provider-aad
  resource auth 'config' = if (!empty(entraClientId)) {
    name: 'authsettingsV2'
    properties: {
      platform: {
        enabled: true
      }
      globalValidation: {
        requireAuthentication: true
        unauthenticatedClientAction: 'Return401'
        // As the API itself: health and the OpenAPI document are open (hotpatch/api/access.py).
        excludedPaths: openPaths
      }
      identityProviders: {
        azureActiveDirectory: {
          enabled: true
          registration: {
            clientId: entraClientId
            openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
          }
          // Tokens for the app's API: its application ID URI (v1 tokens) or its client id (v2
          // tokens, which README "Signing in with Microsoft Entra ID" has the app issue, so that
          // their issuer is the v2.0 one above).
          validation: {
            allowedAudiences: [
              'api://${entraClientId}'
              entraClientId
            ]
          }
        }
      }
      login: {
        tokenStore: {
          enabled: false
        }
      }
    }
  }
}

output name string = site.name
output id string = site.id
output defaultHostName string = site.properties.defaultHostName
