// Key Vault for the Microsoft client secret and the token-encryption key. Access is by Azure RBAC
// only (no access policies); soft delete and purge protection keep a deleted secret recoverable
// for the retention period, so nobody can destroy the token key at once.

@minLength(3)
@maxLength(24)
@description('Name of the vault: 3-24 letters, digits and hyphens, globally unique.')
param name string

@description('Azure region.')
param location string

@description('Tags for the vault.')
param tags object

@minValue(7)
@maxValue(90)
@description('Days a deleted secret stays recoverable (and its name blocked).')
param softDeleteRetentionInDays int = 90

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: no virtual network yet; each request needs Entra ID and a role
  // checkov:skip=CKV_AZURE_189: no virtual network yet; the app and operators reach it publicly
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    enablePurgeProtection: true
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

output name string = vault.name
output id string = vault.id
output uri string = vault.properties.vaultUri
