"""RiskGraph: loaders."""
