"""The pipeline: SDModel, requests, results, sizing, infotext, video files."""
