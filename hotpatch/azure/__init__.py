"""Adapters that talk to Azure: Resource Graph inventory, Compute patch operations, credentials."""
