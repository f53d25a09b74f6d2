//! Support for the provider-fault rows (5xx, slow, dropped, malformed, invalid_grant).
