"""What several testbed images share: the node's identity and libp2p host, the protobuf codec,
content identifiers and Merkle proofs, the BlockExchange wire format, NAT helpers, serving.

It lives in the `pyruntime` image (images/pyruntime, on PYTHONPATH as /opt/toolkit) that the
reference node, the relay, the reference status peer and the load generator all build FROM, so
none of them depends on another and each image's tag changes only with its own inputs.
"""
