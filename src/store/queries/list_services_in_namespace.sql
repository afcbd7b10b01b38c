-- A page of one namespace, walked in order along the (namespace, name) index and
-- stopped at the page size. Only negations (or nothing) select: checked row by row.
--
-- The conditions are written for the planner's row estimate, which must stay above
-- the page size whether statistics are fresh, stale or absent; when it falls below,
-- collecting every row of the range and sorting them looks as cheap as the walk, and a
-- whole namespace gets read and sorted for each page. Without statistics an equality
-- (`namespace = $1`) is guessed to keep 0.5% of the rows, and a row comparison is
-- estimated by its first column alone, so `(namespace, name) > ($1, $2)` counts only
-- the namespaces after this one. `>=` with `<>`, and `namespace <= $1` in place of the
-- equality, state the same range in terms estimated as a third of the rows each
-- without statistics, and as all of this namespace's rows with them.
SELECT uid, namespace, name,
       labels AS "labels: Json<BTreeMap<String, String>>",
       annotations AS "annotations: Json<BTreeMap<String, String>>",
       spec AS "spec: Json<ExternalServiceSpec>",
       generation, resource_version, created_at,
       origin, mirrored_generation, mirror_error,
       status AS "status: Json<ExternalServiceStatus>"
FROM external_services
WHERE (namespace, name) >= ($1, $2) AND (namespace, name) <> ($1, $2) AND namespace <= $1
  AND NOT labels ?| $3::text[]
  AND NOT labels @> ANY($4::jsonb[])
ORDER BY namespace, name
LIMIT $5
