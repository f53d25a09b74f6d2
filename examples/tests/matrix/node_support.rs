//! Support for the node rows (SIGKILLed node, PostgreSQL restarted, keychain locked).
