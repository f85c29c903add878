// The Function App on a Flex Consumption plan (Linux, Python 3.11) and every app setting the code
// reads (shared/settings.py; tests/unit/test_infra_settings.py checks the list). The app runs as
// the user-assigned identity: identity-based AzureWebJobsStorage, Key Vault reads through the SDK,
// Entra ID auth for Application Insights and for reading its own deployment package.

@description('Name of the Function App, globally unique.')
param name string

@description('Name of the Flex Consumption plan.')
param planName string

@description('Azure region.')
param location string

@description('Tags for every resource; the app also gets azd-service-name.')
param tags object

@description('Key of the service in azure.yaml that azd deploys here.')
param serviceName string = 'api'

@description('Resource id of the user-assigned identity.')
param identityId string

@description('Client id of the user-assigned identity.')
param identityClientId string

@description('Blob endpoint of the storage account, ending in /.')
param blobEndpoint string

@description('Queue endpoint of the storage account.')
param queueEndpoint string

@description('Table endpoint of the storage account.')
param tableEndpoint string

@description('Blob container holding the deployment package.')
param deploymentContainerName string

@description('Application Insights connection string (no key is usable: local auth is off).')
param applicationInsightsConnectionString string

@description('Key Vault URI, for example https://kv-abc.vault.azure.net/.')
param keyVaultUri string

@description('Application (client) id of the Microsoft Entra app registration.')
param microsoftClientId string

@description('Audience (aud) that API bearer tokens must carry.')
param apiAudience string

@description('Messages per Graph delta page.')
param graphPageSize int

@allowed([512, 2048, 4096])
@description('Memory of each instance, in MB.')
param instanceMemoryMB int

@minValue(40)
@maxValue(1000)
@description('Most instances the app scales out to.')
param maximumInstanceCount int

@description('Key Vault secret holding the app registration\'s client secret.')
param clientSecretName string = 'microsoft-client-secret'

@description('Key Vault secret holding the 32-byte token-encryption key.')
param tokenKeySecretName string = 'token-encryption-key'

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: zone redundancy on Flex needs always-ready (billed idle) instances
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: { tier: 'FlexConsumption', name: 'FC1' }
  properties: { reserved: true }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: a public API; callers prove themselves with Entra ID bearer tokens
  // checkov:skip=CKV_AZURE_17: consent redirects come from browsers, which hold no client cert
  // checkov:skip=CKV_AZURE_212: Flex scales from zero; a 10-minute sync round bears a cold start
  // checkov:skip=CKV_AZURE_213: Flex has no platform health check; GET /api/health answers probes
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': serviceName })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identityId}': {} }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${blobEndpoint}${deploymentContainerName}'
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
      runtime: { name: 'python', version: '3.11' }
    }
  }
}

// Publishing with a user name and password is off; azd deploys with an Entra ID token.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'ftp'
  properties: { allow: false }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'scm'
  properties: { allow: false }
}

resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  // These checks read every sites/config as the 'web' configuration; this one is 'appsettings'.
  // checkov:skip=CKV_AZURE_63: HTTP logging is a site configuration setting, not an app setting
  // checkov:skip=CKV_AZURE_65: detailed errors is a site configuration setting, not an app setting
  // checkov:skip=CKV_AZURE_66: request tracing is a site configuration setting, not an app setting
  // checkov:skip=CKV_AZURE_80: .NET version does not apply to a Python app
  // checkov:skip=CKV_AZURE_88: Flex Consumption keeps no content on Azure Files
  // checkov:skip=CKV_AZURE_222: public network access is a site property, covered on the site above
  // checkov:skip=CKV_AZURE_13: the product checks Entra ID bearer tokens (shared/access/auth.py)
  parent: app
  name: 'appsettings'
  properties: {
    AzureWebJobsStorage__credential: 'managedidentity'
    AzureWebJobsStorage__clientId: identityClientId
    AzureWebJobsStorage__blobServiceUri: blobEndpoint
    AzureWebJobsStorage__queueServiceUri: queueEndpoint
    AzureWebJobsStorage__tableServiceUri: tableEndpoint
    APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
    AZURE_CLIENT_ID: identityClientId
    AZURE_TENANT_ID: tenant().tenantId
    GRAPH_BASE_URL: 'https://graph.microsoft.com/v1.0'
    IDENTITY_AUTHORITY_HOST: environment().authentication.loginEndpoint
    MSAL_AUTHORITY_TENANT: 'organizations'
    MICROSOFT_CLIENT_ID: microsoftClientId
    MICROSOFT_CLIENT_SECRET_NAME: clientSecretName
    TOKEN_KEY_SECRET_NAME: tokenKeySecretName
    KEY_VAULT_URL: keyVaultUri
    KEY_VAULT_VERIFY_CHALLENGE_RESOURCE: 'true'
    API_AUDIENCE: apiAudience
    CONSENT_REDIRECT_URI: 'https://${app.properties.defaultHostName}/api/consent/callback'
    GRAPH_PAGE_SIZE: string(graphPageSize)
  }
}

output name string = app.name
output apiBaseUrl string = 'https://${app.properties.defaultHostName}/api'
output consentRedirectUri string = 'https://${app.properties.defaultHostName}/api/consent/callback'
