//! Support for the network rows (partitioned, loss, latency): test hosts in namespaces.
