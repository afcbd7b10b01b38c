-- A page of every namespace, walked in order along the (namespace, name) index and
-- stopped at the page size. Only negations (or nothing) select: checked row by row.
-- The range is written as in list_services_in_namespace.sql, for the row estimate.
SELECT uid, namespace, name,
       labels AS "labels: Json<BTreeMap<String, String>>",
       annotations AS "annotations: Json<BTreeMap<String, String>>",
       spec AS "spec: Json<ExternalServiceSpec>",
       generation, resource_version, created_at,
       origin, mirrored_generation, mirror_error,
       status AS "status: Json<ExternalServiceStatus>"
FROM external_services
WHERE (namespace, name) >= ($1, $2) AND (namespace, name) <> ($1, $2)
  AND NOT labels ?| $3::text[]
  AND NOT labels @> ANY($4::jsonb[])
ORDER BY namespace, name
LIMIT $5
