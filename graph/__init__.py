"""RiskGraph: graph."""
