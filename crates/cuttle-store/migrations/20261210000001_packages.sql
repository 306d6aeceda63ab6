-- The built-in feed's package versions. Only what is known about a file is
-- kept here; the file itself lives in the data directory, named by its
-- SHA-256 (`hash`), and may be shared by several rows (the same content
-- pushed under two names, or to two spaces).
CREATE TABLE packages (
    id TEXT NOT NULL,
    space_id TEXT NOT NULL,
    package_id TEXT NOT NULL,
    -- A package version is unique by id (any case) and version by
    -- precedence (1.0 is 1.0.0), as NuGet compares them.
    package_id_lower TEXT NOT NULL,
    version TEXT NOT NULL,
    version_key TEXT NOT NULL,
    file_extension TEXT NOT NULL,
    hash TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    published TEXT NOT NULL,
    PRIMARY KEY (space_id, package_id_lower, version_key)
);
-- `packages-<PackageId>.<Version>` can coincide for two packages
-- (`A.1` 2.0 and `A` 1.2.0); the first pushed keeps it.
CREATE UNIQUE INDEX packages_id ON packages (space_id, id);
CREATE INDEX packages_hash ON packages (hash);
