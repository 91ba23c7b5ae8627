"""Configs shipped inside the package (`mtl-bt demo --config crypto|stocks`)."""
