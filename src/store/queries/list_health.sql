-- Health of every namespace, walked along the primary key and stopped at the page size
-- (the range is written as in list_services_in_namespace.sql, for the row estimate).
SELECT report AS "report: Json<ServiceHealth>"
FROM service_health
WHERE (namespace, name) >= ($1, $2) AND (namespace, name) <> ($1, $2)
ORDER BY namespace, name
LIMIT $3
