"""services/transfer"""
