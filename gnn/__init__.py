"""RiskGraph: gnn."""
