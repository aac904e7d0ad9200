"""castray"""
