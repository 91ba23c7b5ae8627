"""Real market data bundled with mtl-bt (see PROVENANCE.md)."""
