// The hotpatch workbook: compliance by state, subscription and ring in the latest complete sweep,
// the trend, machines that changed state, upcoming restarts, recent operations and failures. Its
// content is infra/workbook/hotpatch.workbook.json (every query over the workspace's AppMetrics and
// AppTraces, checked against hotpatch/telemetry.py by tests/infra/test_alerts_and_workbook.py);
// it is kept with the Application Insights component, and its queries read the workspace.
// https://learn.microsoft.com/azure/azure-monitor/visualize/workbooks-automate

@description('Azure region of the workbook.')
param location string

@description('Tags on every resource.')
param tags object

@description('Seeds the workbook\'s name.')
param resourceToken string

@description('Resource id of the Log Analytics workspace the queries read.')
param workspaceId string

@description('Resource id of the Application Insights component the workbook is kept with.')
param appInsightsId string

@description('Name of the workbook in the portal.')
param displayName string

// The workbook's Workspace parameter starts at the deployment's workspace.
var content = replace(loadTextContent('../workbook/hotpatch.workbook.json'), '__HOTPATCH_WORKSPACE_ID__', workspaceId)

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, 'hotpatch-workbook', resourceToken)
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: appInsightsId
    serializedData: content
  }
}

output workbookId string = workbook.id
