-- What a data owner reads about its data sets (GET /v1/owners/me): each charge keeps the
-- account it produced (this job's and the composed (ε, δ), as JSON) and the budget the owner's
-- grant set, and data sets are found by owner. Charges recorded before this keep NULL.

ALTER TABLE privacy_charges ADD COLUMN account_json TEXT NULL;
ALTER TABLE privacy_charges ADD COLUMN budget_json TEXT NULL;
CREATE INDEX datasets_by_owner ON datasets (owner);
