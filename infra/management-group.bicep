// The identity's roles over management groups (README "Deployment"): a subscription deployment
// (main.bicep) cannot assign roles at a management group, so this small second entry does, once
// per management group, with main.bicep's `identityPrincipalId` output:
//   az deployment mg create --management-group-id <group> --location <region> \
//     --template-file infra/management-group.bicep \
//     --parameters principalId=<identityPrincipalId> environmentName=<env> mode=report|remediate
// Reader (Resource Graph and plain reads) and, in remediate mode, the custom patch operator role
// defined here with the same actions as modules/operator-role.bicep (operator-actions.bicep).
// https://learn.microsoft.com/azure/azure-resource-manager/bicep/deploy-to-management-group
// https://learn.microsoft.com/azure/role-based-access-control/built-in-roles/general#reader
targetScope = 'managementGroup'

import { operatorActions } from 'modules/operator-actions.bicep'

@description('Principal id of the service\'s managed identity (main.bicep output identityPrincipalId).')
param principalId string

@minLength(1)
@description('The environment main.bicep was deployed as; names the custom role.')
param environmentName string

@allowed([
  'report'
  'remediate'
])
@description('As main.bicep: in report mode the patch operator role is neither defined nor assigned.')
param mode string = 'report'

var remediate = mode == 'remediate'
var reader = tenantResourceId(
  'Microsoft.Authorization/roleDefinitions',
  'acdd72a7-3385-48ef-bd42-f606fba81ae7'
)

resource operatorRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (remediate) {
  name: guid(managementGroup().id, environmentName, 'hotpatch-patch-operator')
  properties: {
    roleName: 'hotpatch patch operator (${environmentName}, ${managementGroup().name})'
    description: 'Assess and install patches on Azure VMs and Azure Arc machines, and follow those operations (hotpatch).'
    type: 'CustomRole'
    assignableScopes: [
      managementGroup().id
    ]
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

resource readerAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(managementGroup().id, principalId, reader)
  properties: {
    roleDefinitionId: reader
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource operatorAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (remediate) {
  name: guid(managementGroup().id, principalId, operatorRole.id)
  properties: {
    roleDefinitionId: operatorRole.id
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
