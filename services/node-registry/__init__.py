"""services/node-registry"""
