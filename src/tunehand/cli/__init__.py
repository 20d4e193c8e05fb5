"""tunehand.cli"""
