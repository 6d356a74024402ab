// The Azure operations the service calls beyond reading (Reader covers Resource Graph and plain
// reads): each one is an operation hotpatch/azure/compute.py sends, and nothing else.
// tests/infra/test_roles.py drives the real adapter against the sandbox, maps every request it
// sends to its operation, and requires this list to be exactly that set.
//
// The permission names and which operation status each poll needs:
// https://learn.microsoft.com/azure/update-manager/roles-permissions
// (Microsoft.Compute/locations/operations/read: "Get the status of an asynchronous operation for
// Azure Virtual machine"; Microsoft.HybridCompute/locations/updateCenterOperationResults/read:
// "Read the status of an update center operation on Arc machines").

@export()
@description('Actions of the custom role that lets the service assess and install patches.')
var operatorActions = [
  'Microsoft.Compute/virtualMachines/assessPatches/action'
  'Microsoft.Compute/virtualMachines/installPatches/action'
  'Microsoft.Compute/locations/operations/read'
  'Microsoft.HybridCompute/machines/assessPatches/action'
  'Microsoft.HybridCompute/machines/installPatches/action'
  'Microsoft.HybridCompute/locations/updateCenterOperationResults/read'
]
