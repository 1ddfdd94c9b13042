"""kpbench harness: nodes, pods, churn and traffic around the reconciler (grows with issues 3-5)."""
