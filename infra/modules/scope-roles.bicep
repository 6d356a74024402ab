// The identity's roles over one target subscription: Reader (Resource Graph and plain reads),
// and in remediate mode the custom patch operator role. Names: guid(scope, principal, role).
// Reader's id: https://learn.microsoft.com/azure/role-based-access-control/built-in-roles/general#reader
targetScope = 'subscription'

@description('Principal id of the managed identity.')
param principalId string

@description('Name (the GUID) of the custom patch operator role; empty in report mode.')
param operatorRoleName string

@description('Assign the patch operator role (remediate mode); in report mode it is not assigned at all.')
param assignOperator bool

var reader = subscriptionResourceId(
  'Microsoft.Authorization/roleDefinitions',
  'acdd72a7-3385-48ef-bd42-f606fba81ae7'
)

resource readerAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, principalId, reader)
  properties: {
    roleDefinitionId: reader
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// The custom role is defined in the first target subscription and assignable in each; here it is
// named by this subscription, as ARM records an assignment's role (an id under another
// subscription is stored rewritten: https://github.com/Azure/azure-rest-api-specs/issues/10939).
resource operatorAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (assignOperator) {
  name: guid(subscription().id, principalId, operatorRoleName)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', operatorRoleName)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
