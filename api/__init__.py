"""RiskGraph: api."""
