"""The Logs panel: a virtual table model over the log store (or a big file on disk) and the view around it.

Import the pieces from their modules (``log_view.LogView``, ``log_model.LogModel``) so that importing
this package stays cheap.
"""
