"""Provider adapters: each module turns one CI system's payloads into the normalised model.

Vendor field names never leave these modules (docs/architecture.md#packages-and-dependencies).
"""
