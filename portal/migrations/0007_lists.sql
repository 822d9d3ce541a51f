-- Lists a vendor pages through and filters (docs/vendor-guide.md#lists-paging-and-filters).
--
-- Who a license is for, in the vendor's own words (an account number, a company, an order
-- system's customer id); optional, set when the license is created. Activations are
-- filtered by their license's customer.
ALTER TABLE licenses ADD COLUMN customer TEXT;

-- Every list is read a page at a time by its key (keyset pagination, never OFFSET): each
-- filtered list reads one range of one of these indexes, in its order, from the cursor's
-- key on, and stops after the page. Licenses: oldest first, by (created, id).
CREATE INDEX licenses_created ON licenses (created, id);
CREATE INDEX licenses_product ON licenses (product, created, id);
CREATE INDEX licenses_status ON licenses (status, created, id);
CREATE INDEX licenses_customer ON licenses (customer, created, id);

-- Activations: newest first, by (created, id) descending.
CREATE INDEX activations_created ON activations (created, id);
CREATE INDEX activations_product ON activations (product, created, id);
CREATE INDEX activations_license_created ON activations (license, created, id);
CREATE INDEX activations_state ON activations (state, created, id);

-- The audit log: newest first, by (at, id) descending; one object's entries (subject=ID)
-- without reading the whole log.
DROP INDEX audit_at;
CREATE INDEX audit_at ON audit (at, id);
CREATE INDEX audit_subject ON audit (subject, at, id);

-- Products are paged by code (their primary key), policies by (product, name) (their
-- unique constraint's index).
