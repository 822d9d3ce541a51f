-- Device variables (issue 10): key/value pairs the application set on the device, as
-- the newest device-signed file of the activation's journal carried them (the request,
-- then each usage report or deactivation that advances the journal head; a file that
-- arrives late does not overwrite them). A JSON object of text to text; '{}': none.
-- They are the customer's claims: signed by the device key, not checked for truth.
ALTER TABLE activations ADD COLUMN variables TEXT NOT NULL DEFAULT '{}';
