"""tunehand.client"""
