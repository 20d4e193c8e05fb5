"""tunehand.core"""
