"""User studies: protocols, participant sessions, questionnaires, study logs and the report (see README.md).

Qt-free except ``figures`` (PNG rendering, offscreen) and the study window, which lives with the GUI.
"""
