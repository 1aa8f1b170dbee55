"""Database access shared by the packages that own tables (the log, the registry).

Embedded default: SQLite files through ADBC. Each package owns its tables and its SQL; this
package only provides the connection plumbing (:mod:`.sqlite`).
"""
