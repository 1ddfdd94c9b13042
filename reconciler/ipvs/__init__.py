"""ipvs mode: kube-proxy's IPVS proxier: virtual servers, ipsets and the iptables rules around them."""
