-- A page of one namespace with a selector that requires labels: the GIN index on
-- labels finds the candidates (`@>`, `?&`), which are then sorted. A selective
-- selector leaves few to sort (300 for 1% of 30,000), and without statistics the
-- planner takes this path. With statistics it may walk the name index instead and
-- check each row, where it expects the page's matches to come soon enough.
-- The range is written as in list_services_in_namespace.sql, for the row estimate.
SELECT uid, namespace, name,
       labels AS "labels: Json<BTreeMap<String, String>>",
       annotations AS "annotations: Json<BTreeMap<String, String>>",
       spec AS "spec: Json<ExternalServiceSpec>",
       generation, resource_version, created_at,
       origin, mirrored_generation, mirror_error,
       status AS "status: Json<ExternalServiceStatus>"
FROM external_services
WHERE (namespace, name) >= ($1, $2) AND (namespace, name) <> ($1, $2) AND namespace <= $1
  AND labels @> $3::jsonb
  AND labels ?& $4::text[]
  AND NOT labels ?| $5::text[]
  AND NOT labels @> ANY($6::jsonb[])
  AND ($7::jsonb IS NULL OR labels_match(labels, $7))
ORDER BY namespace, name
LIMIT $8
