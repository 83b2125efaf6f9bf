-- Dead letters v2 (Kafka Connect's convention): what `plantstream deadletters replay` needs to
-- re-send an original as it was (its key and headers, in order; header keys and values are
-- parallel arrays, a null value kept as NULL), and the whole original's length and SHA-256,
-- so a cut (`truncated`) original can be recognised and checked. Rows archived before this
-- migration (v1 dead letters) have NULL / empty values here.
ALTER TABLE rejected ADD COLUMN IF NOT EXISTS original_key Nullable(String);
ALTER TABLE rejected ADD COLUMN IF NOT EXISTS original_header_keys Array(String);
ALTER TABLE rejected ADD COLUMN IF NOT EXISTS original_header_values Array(Nullable(String));
ALTER TABLE rejected ADD COLUMN IF NOT EXISTS original_length Nullable(Int64);
ALTER TABLE rejected ADD COLUMN IF NOT EXISTS original_sha256 Nullable(String);
