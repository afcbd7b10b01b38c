-- The identity of this installation: written on every ExternalService the mirror makes,
-- so that a resource another installation made (or an exported copy applied with
-- kubectl) is never overwritten or deleted from here. One row, made once; a database
-- restored from a backup keeps it.
CREATE TABLE installation (
    id        uuid    NOT NULL,
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton)
);
INSERT INTO installation (id) VALUES (gen_random_uuid());
