"""Network plumbing inside container namespaces and on the host; the NAT referee."""
