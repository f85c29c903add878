// Outlook sync on Azure: one resource group holding the Function App (Flex Consumption, Python
// 3.11), its storage account, Key Vault, monitoring and the one user-assigned identity they all
// trust. This file only wires the modules in ./app together; `azd up` deploys it.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; it seeds every resource name and tags every resource.')
param environmentName string

@minLength(1)
@description('Azure region for every resource; it must offer the Flex Consumption plan.')
param location string

@description('Object id of whoever runs azd: Secrets Officer and storage data roles; empty: none.')
param principalId string = ''

@allowed(['User', 'ServicePrincipal', 'Group'])
@description('Kind of principal principalId is.')
param principalType string = 'User'

@minLength(36)
@maxLength(36)
@description('Application (client) id of the Microsoft Entra app registration users consent to.')
param microsoftClientId string

@description('Audience (aud) of API bearer tokens; empty means the client id, as v2 tokens carry.')
param apiAudience string = ''

@minValue(1)
@maxValue(1000)
@description('Messages per Graph delta page (Prefer: odata.maxpagesize).')
param graphPageSize int = 50

@allowed([512, 2048, 4096])
@description('Memory of each Flex Consumption instance, in MB.')
param instanceMemoryMB int = 2048

@minValue(40)
@maxValue(1000)
@description('Most instances the app scales out to.')
param maximumInstanceCount int = 100

@description('Name of the resource group; empty derives one from the environment.')
param resourceGroupName string = ''

@description('Name of the Function App; empty derives one from the environment.')
param functionAppName string = ''

@description('Name of the Flex Consumption plan; empty derives one from the environment.')
param appServicePlanName string = ''

@description('Name of the storage account; empty derives one from the environment.')
param storageAccountName string = ''

@description('Name of the Key Vault; empty derives one from the environment.')
param keyVaultName string = ''

@description('Name of the user-assigned identity; empty derives one from the environment.')
param identityName string = ''

@description('Name of the Log Analytics workspace; empty derives one from the environment.')
param logAnalyticsName string = ''

@description('Name of the Application Insights component; empty derives one from the environment.')
param applicationInsightsName string = ''

var abbrs = loadJsonContent('./abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
var appName = !empty(functionAppName) ? functionAppName : '${abbrs.webSitesFunctions}${resourceToken}'
var audience = !empty(apiAudience) ? apiAudience : microsoftClientId

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

module identity './app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: !empty(identityName) ? identityName : '${abbrs.managedIdentityUserAssignedIdentities}${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring './app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: !empty(logAnalyticsName) ? logAnalyticsName : '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: !empty(applicationInsightsName) ? applicationInsightsName : '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
  }
}

module storage './app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: !empty(storageAccountName) ? storageAccountName : '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: 'app-package-${take(appName, 32)}-${take(resourceToken, 7)}'
  }
}

module keyVault './app/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: !empty(keyVaultName) ? keyVaultName : '${abbrs.keyVaultVaults}${resourceToken}'
    location: location
    tags: tags
  }
}

module rbac './app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    appPrincipalId: identity.outputs.principalId
    developerPrincipalId: principalId
    developerPrincipalType: principalType
    storageAccountName: storage.outputs.name
    keyVaultName: keyVault.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
  }
}

module functionApp './app/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  // The app reads Key Vault and storage as soon as it starts; its roles must exist first.
  dependsOn: [rbac]
  params: {
    name: appName
    planName: !empty(appServicePlanName) ? appServicePlanName : '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    blobEndpoint: storage.outputs.blobEndpoint
    queueEndpoint: storage.outputs.queueEndpoint
    tableEndpoint: storage.outputs.tableEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    keyVaultUri: keyVault.outputs.uri
    microsoftClientId: microsoftClientId
    apiAudience: audience
    graphPageSize: graphPageSize
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output API_BASE_URL string = functionApp.outputs.apiBaseUrl
output CONSENT_REDIRECT_URI string = functionApp.outputs.consentRedirectUri
output API_AUDIENCE string = audience
output KEY_VAULT_NAME string = keyVault.outputs.name
output KEY_VAULT_URL string = keyVault.outputs.uri
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output STORAGE_BLOB_URI string = storage.outputs.blobEndpoint
output STORAGE_QUEUE_URI string = storage.outputs.queueEndpoint
output STORAGE_TABLE_URI string = storage.outputs.tableEndpoint
output APP_IDENTITY_CLIENT_ID string = identity.outputs.clientId
