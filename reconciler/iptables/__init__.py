"""iptables mode: kube-proxy's iptables proxier, rendered purely and applied with iptables-restore."""
