// The Function App's storage account: its host storage (AzureWebJobsStorage), the deployment
// package container, the compliance store (hotpatch/store/azure.py: one blob container and its
// tables) and the fan-out queues (hotpatch/functions). Shared keys are off: everything signs in
// with the user-assigned identity, which gets data roles on this account only.
// Identity-based host storage and the roles it needs:
// https://learn.microsoft.com/azure/azure-functions/functions-reference#connecting-to-host-storage-with-an-identity
// Built-in role ids: https://learn.microsoft.com/azure/role-based-access-control/built-in-roles

@description('Azure region.')
param location string

@description('Tags on every resource.')
param tags object

@description('Seeds the resource names.')
param resourceToken string

@description('Blob containers to create (the deployment package container, the store\'s container).')
param containers array

@description('Tables to create (the compliance store\'s).')
param tables array

@description('Queues to create (the Function App\'s fan-out queues).')
param queues array

@description('Principal id of the managed identity that gets the data roles.')
param principalId string

var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageQueueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
// Blob Data Owner, as the Functions host storage guidance asks for AzureWebJobsStorage (the
// host manages its own containers and blob leases); queue and table data for the fan-out and
// the store.
var dataRoles = [
  storageBlobDataOwner
  storageQueueDataContributor
  storageTableDataContributor
]

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: 'st${resourceToken}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
  }

  resource blobService 'blobServices' = {
    name: 'default'

    resource container 'containers' = [
      for name in containers: {
        name: name
      }
    ]
  }

  resource tableService 'tableServices' = {
    name: 'default'

    resource table 'tables' = [
      for name in tables: {
        name: name
      }
    ]
  }

  resource queueService 'queueServices' = {
    name: 'default'

    resource queue 'queues' = [
      for name in queues: {
        name: name
      }
    ]
  }
}

resource dataRoleAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in dataRoles: {
    name: guid(account.id, principalId, role)
    scope: account
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
      principalId: principalId
      principalType: 'ServicePrincipal'
    }
  }
]

output name string = account.name
output id string = account.id
output blobEndpoint string = account.properties.primaryEndpoints.blob
output queueEndpoint string = account.properties.primaryEndpoints.queue
output tableEndpoint string = account.properties.primaryEndpoints.table
