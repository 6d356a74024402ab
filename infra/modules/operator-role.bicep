// The custom role that lets the service start and follow patch operations, and nothing else:
// the actions are operator-actions.bicep's (tests/infra/test_roles.py derives them from the
// adapters). No dataActions. Deployed only in remediate mode.
// https://learn.microsoft.com/azure/role-based-access-control/custom-roles-bicep
// https://learn.microsoft.com/azure/templates/microsoft.authorization/roledefinitions
targetScope = 'subscription'

import { operatorActions } from 'operator-actions.bicep'

@description('Names the role (unique in the tenant).')
param environmentName string

@description('Subscriptions the role may be assigned in (resource ids, /subscriptions/<id>).')
param assignableScopes array

resource operatorRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  // Role definitions are the tenant's: name and roleName are unique there, per subscription
  // and environment.
  name: guid(subscription().id, environmentName, 'hotpatch-patch-operator')
  properties: {
    roleName: 'hotpatch patch operator (${environmentName}, ${subscription().subscriptionId})'
    description: 'Assess and install patches on Azure VMs and Azure Arc machines, and follow those operations (hotpatch).'
    type: 'CustomRole'
    assignableScopes: assignableScopes
    permissions: [
      {
        actions: operatorActions
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

output id string = operatorRole.id
@description('The role\'s GUID: an assignment in another subscription names it by its own subscription.')
output name string = operatorRole.name
