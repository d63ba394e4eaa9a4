"""RiskGraph: limits."""
