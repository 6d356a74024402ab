// The user-assigned managed identity the Function App uses for everything: its host storage, the
// deployment package, the compliance store, Resource Graph, and the patch operations.
// https://learn.microsoft.com/azure/templates/microsoft.managedidentity/userassignedidentities

@description('Azure region.')
param location string

@description('Tags on every resource.')
param tags object

@description('Seeds the resource names.')
param resourceToken string

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${resourceToken}'
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
